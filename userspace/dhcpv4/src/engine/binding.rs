//! A lease record under the failover policy: may a client take it, what
//! binding status it has for the partner, how long a lease may be granted,
//! and the stores that bind it (all run under the record's lock).

use lease_store::{
    ClientKey, Lease, LeaseState, Owner, VarData, VarEdit, VarParts, VarRef, EXPIRY_PERMANENT,
};
use xdhcpd_failover::{FailoverPolicy, RequestKind};

use crate::wire::{Message, MessageType, Summary};

use super::RxMeta;

/// May `key` take this record now, under the failover policy `pol`?
/// The client's own binding is not an allocation; anything else is, and
/// must pass `may_allocate_lease` (own pool; the partner's only in PARTNER-DOWN
/// after MCLT; expired/released only after the partner acknowledged them). `own_only`: the
/// record lies in a pool with dynamic BOOTP, where the partner's addresses are never ours
/// (`may_allocate_own_only`, draft-12 5.14).
pub(super) fn may_take(
    l: &Lease,
    key: &ClientKey,
    now: u32,
    pol: Option<&FailoverPolicy>,
    own_only: bool,
) -> bool {
    if !can_take(l, key, now) {
        return false;
    }
    let own = l.client == *key && l.state.binds_client();
    match pol {
        None => true,
        // A pool with dynamic BOOTP (the failover crate's rules: owner, status and last end of
        // the record): the client's own ended binding on the partner's side is not taken
        // back either, the partner may have given the address to a BOOTP client meanwhile.
        Some(p) if own_only => {
            if own {
                is_bound(l, now) || p.owns_record(l)
            } else {
                p.may_allocate_own_only(now, l)
            }
        }
        Some(_) if own => true,
        // The failover crate's rule (status and last end of the record, with the expiry
        // grace), which the simulation runs too.
        Some(p) => p.may_allocate_lease(now, l),
    }
}

/// Lease time granted: the configured choice, capped by the MCLT rule when
/// in a failover relationship. Returns (seconds, expiry, potential expiry).
pub(super) fn grant(
    pol: Option<&FailoverPolicy>,
    now: u32,
    desired: u32,
    acked: u32,
) -> (u32, u32, u32) {
    match pol {
        None => (
            desired,
            now.saturating_add(desired),
            now.saturating_add(desired),
        ),
        Some(p) => {
            let g = p.lease_time_allowed(now, desired, acked);
            (g.lease_secs, g.lease_expiry, g.potential_expiry)
        }
    }
}

/// Failover's view of the request kind (for admission).
pub(super) fn request_kind(
    kind: MessageType,
    msg: &Message<'_>,
    sum: &Summary<'_>,
    meta: &RxMeta,
) -> RequestKind {
    match kind {
        MessageType::Discover => RequestKind::Discover,
        MessageType::Release => RequestKind::Release,
        MessageType::Decline => RequestKind::Decline,
        MessageType::Inform => RequestKind::Inform,
        _ if sum.server_id.is_some() => RequestKind::RequestSelecting,
        _ if msg.ciaddr().is_unspecified() => RequestKind::RequestInitReboot,
        _ if meta.dst_ip.is_broadcast() => RequestKind::Rebind,
        _ => RequestKind::Renew,
    }
}

/// A lease that holds its address for a client at `now`.
pub(super) fn is_bound(l: &Lease, now: u32) -> bool {
    match l.state {
        LeaseState::Active | LeaseState::Offered => l.expiry > now,
        LeaseState::Reserved | LeaseState::Declined | LeaseState::Abandoned => true,
        _ => false,
    }
}

/// The free state of an address owned by `owner` (failover: FREE or BACKUP).
pub(super) fn free_state(owner: Owner) -> LeaseState {
    match owner {
        Owner::Primary => LeaseState::Free,
        Owner::Backup => LeaseState::Backup,
    }
}

/// `bind` with the failover lease-time rule; returns the lease seconds.
#[allow(clippy::too_many_arguments)]
pub(super) fn bind_granted<'m>(
    l: &mut Lease,
    key: &ClientKey,
    msg: &Message<'_>,
    state: LeaseState,
    now: u32,
    desired: u32,
    hold: u32,
    pol: Option<&FailoverPolicy>,
    ve: &mut VarEdit<'_, 'm>,
    var: MsgVar<'m>,
) -> u32 {
    if l.state == LeaseState::Backup {
        l.owner = Owner::Backup;
    } else if l.state == LeaseState::Free {
        l.owner = Owner::Primary;
    }
    let (secs, expiry, potential) = grant(pol, now, desired, l.acked_potential_expiry);
    // A renewal unicast by the client itself carries no option 82: the one
    // stored from its relayed messages stays (leasequery and BNDUPD need it).
    let same_client = l.client == *key && l.state.binds_client();
    let keep_relay =
        var.parts.relay_agent_info().is_empty() && msg.giaddr().is_unspecified() && same_client;
    if state == LeaseState::Offered {
        // Re-offering the client its unexpired Active lease leaves the record alone (`bind`);
        // any other offer records the relay data too: the lease caps count held addresses
        // (offers included) by the record's option 82 (`caps.rs`).
        let reoffer = l.client == *key && l.state == LeaseState::Active && l.expiry > now;
        bind(l, key, msg, state, now, hold);
        if !reoffer && !var.offer_only {
            store_var(l, ve, var, keep_relay, same_client);
        } else if !reoffer && !same_client {
            // Written when the lease is bound (REQUEST): an offer to a new client keeps at
            // most option 82 inline (as before variable-length data) and none of the last
            // client's data; the same client's stay until its REQUEST.
            l.var = var.r;
        }
    } else {
        bind(l, key, msg, state, now, expiry);
        l.potential_expiry = potential;
        // A DHCP lease, with its end: no longer a permanent BOOTP binding.
        l.flags &= !lease_store::FLAG_BOOTP;
        store_var(l, ve, var, keep_relay, same_client);
    }
    secs
}

/// Binds `key` permanently (dynamic BOOTP, RFC 2131 §4.1): ACTIVE, lease end and potential
/// end [`EXPIRY_PERMANENT`], [`lease_store::FLAG_BOOTP`] set. No MCLT cap: a BOOTP client
/// never renews, so no lease it could be given would ever be shortened (draft-12 5.14); the
/// failover rule for these bindings is the pool rule (`may_take`'s `own_only`).
pub(super) fn bind_bootp<'m>(
    l: &mut Lease,
    key: &ClientKey,
    msg: &Message<'_>,
    now: u32,
    ve: &mut VarEdit<'_, 'm>,
    var: MsgVar<'m>,
) {
    if l.state == LeaseState::Backup {
        l.owner = Owner::Backup;
    } else if l.state == LeaseState::Free {
        l.owner = Owner::Primary;
    }
    let same_client = l.client == *key && l.state.binds_client();
    if same_client && l.is_permanent() {
        // The client's own permanent binding, asked again: nothing changes (its
        // transaction time neither, so the partner is not sent the same binding again).
        return;
    }
    let keep_relay =
        var.parts.relay_agent_info().is_empty() && msg.giaddr().is_unspecified() && same_client;
    bind(l, key, msg, LeaseState::Active, now, EXPIRY_PERMANENT);
    l.lease_time = EXPIRY_PERMANENT;
    l.potential_expiry = EXPIRY_PERMANENT;
    l.flags |= lease_store::FLAG_BOOTP;
    l.flags &= !(lease_store::FLAG_RECONFIGURING | lease_store::FLAG_RECONF_KEY);
    store_var(l, ve, var, keep_relay, same_client);
}

/// A message's variable data (option 82 whole, host name, vendor class) and its handle,
/// computed once per message.
#[derive(Clone, Copy, Debug)]
pub(super) struct MsgVar<'m> {
    pub r: VarRef,
    pub parts: VarParts<'m>,
    /// For an OFFER when nothing reads an offered record's data (no lease caps): `r` is
    /// option 82 inline when it fits (else empty), no CRC-32C computed and nothing written
    /// to the side area; the whole data are stored by the REQUEST that binds the lease.
    pub offer_only: bool,
}

/// Stores the message's variable data with the binding: option 82 whole (kept from before
/// when `keep_relay`), host name and vendor class when the message has them (else kept for
/// the same client, dropped for a new one). The side area is written only when the handle
/// changes (a renewal with the same data writes nothing there).
#[inline]
fn store_var<'m>(
    l: &mut Lease,
    ve: &mut VarEdit<'_, 'm>,
    var: MsgVar<'m>,
    keep_relay: bool,
    same_client: bool,
) {
    let p = var.parts;
    let ri_old = keep_relay && p.relay_agent_info().is_empty();
    let hn_old = same_client && p.host_name().is_empty();
    let vc_old = same_client && p.vendor_class().is_empty();
    if !ri_old && !hn_old && !vc_old {
        if l.var != var.r {
            ve.set(l, var.r, p);
        }
        return;
    }
    merge_var(l, ve, p, ri_old, hn_old, vc_old);
}

/// [`store_var`] when some of the old values stay: out of line (a renewal without option 82
/// or host name).
#[inline(never)]
fn merge_var(
    l: &mut Lease,
    ve: &mut VarEdit<'_, '_>,
    p: VarParts<'_>,
    ri_old: bool,
    hn_old: bool,
    vc_old: bool,
) {
    // Nothing new in the message: everything stays as it is.
    if ri_old && hn_old && vc_old {
        l.var = ve.old_ref();
        return;
    }
    let old = *ve.old();
    let v = VarData::from_parts(
        if ri_old {
            old.relay_agent_info()
        } else {
            p.relay_agent_info()
        },
        if hn_old {
            old.host_name()
        } else {
            p.host_name()
        },
        if vc_old {
            old.vendor_class()
        } else {
            p.vendor_class()
        },
    );
    ve.set_owned(l, v);
}

/// Writes the binding of `key` into a record the caller may take.
pub(super) fn bind(
    l: &mut Lease,
    key: &ClientKey,
    msg: &Message<'_>,
    state: LeaseState,
    now: u32,
    expiry: u32,
) {
    // Re-offering an unexpired Active lease keeps it Active with its expiry.
    if state == LeaseState::Offered
        && l.client == *key
        && l.state == LeaseState::Active
        && l.expiry > now
    {
        return;
    }
    // The hardware address is the binding's while it lasts: a message with the same client id
    // from another chaddr neither moves it nor gets a reply unicast to its chaddr
    // (`same_hw`), so it cannot point the server's traffic for the address at another host.
    let held = l.client == *key
        && matches!(l.state, LeaseState::Active | LeaseState::Offered)
        && l.expiry > now;
    l.state = state;
    l.client = *key;
    if !held || l.hlen == 0 {
        l.htype = msg.htype();
        l.hlen = msg.hlen();
        l.chaddr = *msg.chaddr_field();
    }
    l.expiry = expiry;
    if state == LeaseState::Active {
        l.start = now;
        l.cltt = now;
        l.lease_time = expiry.saturating_sub(now);
    }
}

/// May this record be given to `key` now? Free-able, or already `key`'s.
pub(super) fn can_take(l: &Lease, key: &ClientKey, now: u32) -> bool {
    match l.state {
        LeaseState::Free | LeaseState::Released | LeaseState::Expired => true,
        LeaseState::Active | LeaseState::Offered => l.client == *key || l.expiry <= now,
        // Quarantine applies to everyone, the decliner included.
        LeaseState::Declined => l.expiry <= now,
        LeaseState::Reserved => l.client == *key,
        // A backup-owned free address: whether this server may use it is
        // the failover policy's call (`may_take`).
        LeaseState::Backup => true,
        LeaseState::Abandoned => false,
    }
}

/// Whether `msg` comes from the hardware address bound in `l` (a record without one, as
/// imported or written by a partner without chaddr, matches anything).
#[inline]
pub(super) fn same_hw(l: &Lease, msg: &Message<'_>) -> bool {
    if l.hlen == 0 {
        return true;
    }
    if l.htype != msg.htype() || l.hlen != msg.hlen() {
        return false;
    }
    // The first hlen bytes of the two 16-byte fields, as one masked compare (no memcmp call
    // on the per-packet path).
    let keep = u128::MAX << (8 * (16 - u32::from(l.hlen.min(16))));
    (u128::from_be_bytes(l.chaddr) ^ u128::from_be_bytes(*msg.chaddr_field())) & keep == 0
}
