//! Per-packet failover policy: a small `Copy` snapshot the DHCP workers consult without locks
//! or allocation, plus the publishing cell ([`PolicyCell`]) the driver writes it through.
//!
//! Load balancing follows RFC 3074 with ISC dhcpd's bit convention (interoperability beats the
//! draft's prose here): bucket `b` is served by the **primary** when bit `b % 8` of byte
//! `b / 8` of the hash-bucket-assignment is set, by the secondary otherwise. `split N` sets
//! buckets `0..N`. Without load balancing the HBA has every bit set, so the secondary answers
//! no DISCOVER in NORMAL.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::types::{BindingStatus, Role, ServerState};

/// RFC 3074 section 6 permutation table (the Pearson hash used for load balancing).
pub const RFC3074_TABLE: [u8; 256] = [
    251, 175, 119, 215, 81, 14, 79, 191, 103, 49, 181, 143, 186, 157, 0, 232, 31, 32, 55, 60, 152,
    58, 17, 237, 174, 70, 160, 144, 220, 90, 57, 223, 59, 3, 18, 140, 111, 166, 203, 196, 134, 243,
    124, 95, 222, 179, 197, 65, 180, 48, 36, 15, 107, 46, 233, 130, 165, 30, 123, 161, 209, 23, 97,
    16, 40, 91, 219, 61, 100, 10, 210, 109, 250, 127, 22, 138, 29, 108, 244, 67, 207, 9, 178, 204,
    74, 98, 126, 249, 167, 116, 34, 77, 193, 200, 121, 5, 20, 113, 71, 35, 128, 13, 182, 94, 25,
    226, 227, 199, 75, 27, 41, 245, 230, 224, 43, 225, 177, 26, 155, 150, 212, 142, 218, 115, 241,
    73, 88, 105, 39, 114, 62, 255, 192, 201, 145, 214, 168, 158, 221, 148, 154, 122, 12, 84, 82,
    163, 44, 139, 228, 236, 205, 242, 217, 11, 187, 146, 159, 64, 86, 239, 195, 42, 106, 198, 118,
    112, 184, 172, 87, 2, 173, 117, 176, 229, 247, 253, 137, 185, 99, 164, 102, 147, 45, 66, 231,
    52, 141, 211, 194, 206, 246, 238, 56, 110, 78, 248, 63, 240, 189, 93, 92, 51, 53, 183, 19, 171,
    72, 50, 33, 104, 101, 69, 8, 252, 83, 120, 76, 135, 85, 54, 202, 125, 188, 213, 96, 235, 136,
    208, 162, 129, 190, 132, 156, 38, 47, 1, 7, 254, 24, 4, 216, 131, 89, 21, 28, 133, 37, 153,
    149, 80, 170, 68, 6, 169, 234, 151,
];

/// RFC 3074 hash of a client key (client identifier, else chaddr) into 0..=255.
pub fn rfc3074_hash(key: &[u8]) -> u8 {
    // The algorithm seeds with the length (mod 256) and walks the key from its end.
    let mut h = key.len() as u8;
    for &b in key.iter().rev() {
        h = RFC3074_TABLE[(h ^ b) as usize];
    }
    h
}

/// HBA where buckets `0..split` belong to the primary (ISC `split`); `split` is capped at 256.
pub fn hba_from_split(split: u16) -> [u8; 32] {
    let mut hba = [0u8; 32];
    for b in 0..split.min(256) {
        hba[(b / 8) as usize] |= 1 << (b % 8);
    }
    hba
}

/// True when `bucket` belongs to the primary under `hba`.
pub fn bucket_is_primary(hba: &[u8; 32], bucket: u8) -> bool {
    hba[(bucket >> 3) as usize] & (1 << (bucket & 7)) != 0
}

/// What kind of client message the DHCP engine is about to answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestKind {
    /// DHCPDISCOVER.
    Discover,
    /// REQUEST in SELECTING (server-id present; the DHCP engine checks the server id itself).
    RequestSelecting,
    /// REQUEST in INIT-REBOOT (requested-address, no server id, no ciaddr).
    RequestInitReboot,
    /// Unicast REQUEST with ciaddr (RENEWING).
    Renew,
    /// Broadcast REQUEST with ciaddr (REBINDING).
    Rebind,
    /// DHCPRELEASE of an existing lease.
    Release,
    /// DHCPDECLINE of an offered address.
    Decline,
    /// DHCPINFORM (configuration only, no address).
    Inform,
    /// A BOOTP request (no DHCP message type).
    Bootp,
}

/// Why a client message is not answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// The server answers nobody in this state (STARTUP, RECOVER, RECOVER-WAIT,
    /// POTENTIAL-CONFLICT, PAUSED, SHUTDOWN). Log: `"dropped: failover <STATE>"`.
    Unresponsive(ServerState),
    /// NORMAL and the client's hash bucket belongs to the partner (the backup without load
    /// balancing: every DISCOVER). Log: "dropped: failover NORMAL".
    PartnersBucket,
    /// RECOVER-DONE answers only RENEW/REBIND.
    RenewOnly,
    /// NORMAL with `rebind-limit` set: a RENEW from a client the partner should serve (its
    /// hash bucket is the partner's; every client, for the backup without load balancing).
    /// We served it while the partner could not (with T2 = T1 + rebind-limit); unanswered, the
    /// client rebinds by broadcast at that T2 and the partner takes it back (seed 000,
    /// `rebind-limit`). Log: "dropped: failover NORMAL, partner's client renewing".
    PartnersRenew,
}

/// Answer of [`FailoverPolicy::admit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Answer normally.
    Serve,
    /// Answer, but the client is one the partner would normally serve: cap T2 with
    /// [`FailoverPolicy::rebind_time`].
    ServeForPartner,
    /// Do not answer, for this reason (count it and log it).
    Drop(DropReason),
}

/// Lease time and the potential expiration to send in the BNDUPD, from
/// [`FailoverPolicy::lease_time_allowed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseGrant {
    /// Seconds to put in option 51.
    pub lease_secs: u32,
    /// `now + lease_secs`, to store and send as lease-expiration-time.
    pub lease_expiry: u32,
    /// potential-expiration-time for the BNDUPD.
    pub potential_expiry: u32,
}

/// Snapshot of what the failover state allows; `Copy`, 80 bytes, no pointers. Produced by
/// [`crate::FailoverEngine::policy`] and published to workers through a [`PolicyCell`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailoverPolicy {
    /// Our role: decides which pool is ours and which hash buckets (see the module doc).
    pub role: Role,
    /// Our failover state: decides whom we answer ([`admit`](Self::admit)).
    pub state: ServerState,
    /// Maximum client lead time, seconds.
    pub mclt: u32,
    /// Potential expiration = now + desired * factor / 1000 (default 1500).
    pub lease_period_factor_permille: u32,
    /// PARTNER-DOWN only: time from which the partner's available addresses may be allocated
    /// (partner-down time + MCLT). Meaningless in other states.
    pub partner_down_usable_at: u32,
    /// RFC 3074 hash bucket assignment; see the module doc for the bit convention.
    pub hba: [u8; 32],
    /// Ignore load balancing once the client's `secs` exceeds this (0 = never).
    pub load_balance_max_secs: u16,
    /// T2 = T1 + rebind_limit when serving the partner's client (0 = no limit).
    pub rebind_limit: u32,
    /// PARTNER-DOWN declared from RECOVER (the partner's PARTNER-DOWN leases are unknown):
    /// our own pool waits like the partner's, see [`may_allocate`](Self::may_allocate).
    pub own_pool_waits: bool,
    /// [`crate::Config::expiry_grace`]: added to a record's last end before MCLT is counted.
    pub expiry_grace: u32,
}

impl FailoverPolicy {
    /// Policy of a server without failover: answers everyone, no lease limits.
    pub fn standalone() -> Self {
        FailoverPolicy {
            role: Role::Primary,
            state: ServerState::PartnerDown,
            mclt: u32::MAX,
            lease_period_factor_permille: 1500,
            partner_down_usable_at: 0,
            hba: [0xff; 32],
            load_balance_max_secs: 0,
            rebind_limit: 0,
            own_pool_waits: false,
            expiry_grace: 0,
        }
    }

    /// Does this server answer clients at all in its state (ignoring load balancing)?
    pub fn responsive(&self) -> bool {
        matches!(
            self.state,
            ServerState::Normal
                | ServerState::CommunicationsInterrupted
                | ServerState::PartnerDown
                | ServerState::ConflictDone
                | ServerState::ResolutionInterrupted
        )
    }

    /// True when this policy answers no DISCOVER, INFORM or SELECTING/INIT-REBOOT REQUEST
    /// from any client whose `secs` is at most `load_balance_max_secs` (any `secs` when that
    /// is 0): NORMAL and no load-balancing bucket of our own (the backup without load
    /// balancing). The data path may then drop those messages before parsing them (XDP
    /// `CFG_DHCPV4_STANDBY`); [`admit`](Self::admit) would drop them.
    pub fn is_standby(&self) -> bool {
        let none_ours = match self.role {
            Role::Primary => self.hba == [0u8; 32],
            Role::Secondary => self.hba == [0xffu8; 32],
        };
        self.state == ServerState::Normal && none_ours
    }

    /// True when the RFC 3074 bucket of `client_key` is ours.
    pub fn owns_client(&self, client_key: &[u8]) -> bool {
        let primary = bucket_is_primary(&self.hba, rfc3074_hash(client_key));
        primary == (self.role == Role::Primary)
    }

    /// May this server answer this client message? `client_key` is the client identifier
    /// (option 61) or else chaddr; `secs` is the BOOTP secs field.
    pub fn admit(&self, kind: RequestKind, client_key: &[u8], secs: u16) -> Admission {
        let mine = self.owns_client(client_key);
        let foreign = if mine {
            Admission::Serve
        } else {
            Admission::ServeForPartner
        };
        match self.state {
            ServerState::Normal => match kind {
                // With rebind-limit the partner's clients go back to it: their RENEW (unicast
                // to us, who served them while the partner could not) is left unanswered, so
                // they rebind (broadcast, at the short T2 we gave them) and the partner, which
                // is communicating in NORMAL, answers. Not subject to load-balance-max-seconds:
                // a client retransmits RENEW a minute or more later with `secs` past it, which
                // would let every second try through. The REBIND itself is still answered
                // (below): if the partner cannot hear that relay, we keep the client.
                RequestKind::Renew if !mine && self.rebind_limit != 0 => {
                    Admission::Drop(DropReason::PartnersRenew)
                }
                // Renewals and rebinds are answered by whoever receives them (draft-12 9.8.2);
                // release/decline concern an existing lease.
                RequestKind::Renew
                | RequestKind::Rebind
                | RequestKind::Release
                | RequestKind::Decline => foreign,
                _ => {
                    if mine {
                        Admission::Serve
                    } else if self.load_balance_max_secs != 0 && secs > self.load_balance_max_secs {
                        Admission::ServeForPartner
                    } else {
                        Admission::Drop(DropReason::PartnersBucket)
                    }
                }
            },
            ServerState::RecoverDone => match kind {
                RequestKind::Renew | RequestKind::Rebind => foreign,
                _ => Admission::Drop(DropReason::RenewOnly),
            },
            s if self.responsive() => {
                let _ = s;
                foreign
            }
            s => Admission::Drop(DropReason::Unresponsive(s)),
        }
    }

    /// T2 to send: capped at `t1 + rebind_limit` when the client is the partner's.
    pub fn rebind_time(&self, admission: Admission, t1: u32, t2: u32) -> u32 {
        if admission == Admission::ServeForPartner && self.rebind_limit != 0 {
            t2.min(t1.saturating_add(self.rebind_limit))
        } else {
            t2
        }
    }

    /// May an available address of binding status `status` be given to a *new* client now?
    /// `last_end` is the latest of the record's lease expiry and potential expirations (sent,
    /// acknowledged, received), plus the expiry grace the lease store applies (it absorbs
    /// clock offsets between the partners); 0 for never-used addresses. The same client keeping its own ACTIVE address is not an
    /// allocation and needs no check.
    ///
    /// * own pool (primary FREE, secondary BACKUP): in every responsive state, except with
    ///   `own_pool_waits` (PARTNER-DOWN declared from RECOVER: the partner, in PARTNER-DOWN
    ///   while we were down, may have leased it; its leases end within MCLT of its last
    ///   activity): then like EXPIRED below;
    /// * partner's pool: only in PARTNER-DOWN, from `partner_down_usable_at`;
    /// * EXPIRED/RELEASED/RESET (not yet acknowledged by the partner): never outside
    ///   PARTNER-DOWN (in particular not in COMMUNICATIONS-INTERRUPTED); in PARTNER-DOWN only
    ///   after both `partner_down_usable_at` and `last_end + MCLT`;
    /// * ACTIVE, ABANDONED: never.
    pub fn may_allocate(&self, now: u32, status: BindingStatus, last_end: u32) -> bool {
        if !self.responsive() {
            return false;
        }
        let own = match self.role {
            Role::Primary => BindingStatus::Free,
            Role::Secondary => BindingStatus::Backup,
        };
        let pd_usable =
            self.state == ServerState::PartnerDown && now >= self.partner_down_usable_at;
        let past_last_end = now >= last_end.saturating_add(self.mclt);
        match status {
            s if s == own => !self.own_pool_waits || (pd_usable && past_last_end),
            BindingStatus::Free | BindingStatus::Backup => pd_usable,
            BindingStatus::Expired | BindingStatus::Released | BindingStatus::Reset => {
                pd_usable && past_last_end
            }
            BindingStatus::Active | BindingStatus::Abandoned => false,
        }
    }

    /// [`may_allocate`](Self::may_allocate) for a lease record offered to a new client: its
    /// status and last end as every failover rule reads them ([`crate::store::record`]).
    pub fn may_allocate_lease(&self, now: u32, l: &lease_store::Lease) -> bool {
        self.may_allocate(
            now,
            crate::store::allocation_status(l, now),
            crate::store::allocation_last_end(l, self.expiry_grace),
        )
    }

    /// [`may_allocate_lease`](Self::may_allocate_lease) in a pool with dynamic BOOTP
    /// (draft-12 5.14): its leases are permanent, so neither partner may ever use an address
    /// that was available for allocation by the other, in any state, PARTNER-DOWN after MCLT
    /// included (the partner may have given it to a BOOTP client we never heard of). Only a
    /// record this server owns (primary: FREE side, secondary: BACKUP side, `Lease::owner`,
    /// which stays with an EXPIRED or RELEASED record) passes, and then only as
    /// `may_allocate_lease` allows.
    pub fn may_allocate_own_only(&self, now: u32, l: &lease_store::Lease) -> bool {
        self.owns_record(l) && self.may_allocate_lease(now, l)
    }

    /// Whether record `l` is on this server's side of the split: FREE is the primary's,
    /// BACKUP the secondary's, any other state its `owner` (the side it was allocated from).
    pub fn owns_record(&self, l: &lease_store::Lease) -> bool {
        let own = match self.role {
            Role::Primary => lease_store::Owner::Primary,
            Role::Secondary => lease_store::Owner::Backup,
        };
        // A FREE record's owner is the primary and a BACKUP record's the secondary, whatever
        // the owner byte says (a grant moves the state first).
        let owner = match l.state {
            lease_store::LeaseState::Free => lease_store::Owner::Primary,
            lease_store::LeaseState::Backup => lease_store::Owner::Backup,
            _ => l.owner,
        };
        owner == own
    }

    /// The MCLT rule (draft-12 5.2.1, 7.1.5): the lease never ends later than
    /// `max(now, acked_potential_expiry) + MCLT`; the potential expiration to send is
    /// `now + desired * factor`, and never less than the lease end.
    ///
    /// `acked_potential_expiry` is what the partner has committed to for this binding (0 for
    /// a new client), so a first lease is at most MCLT. In COMMUNICATIONS-INTERRUPTED nothing
    /// is acknowledged any more, so once the last acknowledged value has passed (about a
    /// desired lease period x factor) every extension shrinks to MCLT by itself.
    ///
    /// Pure arithmetic, no allocation: call it on the packet path.
    pub fn lease_time_allowed(
        &self,
        now: u32,
        desired: u32,
        acked_potential_expiry: u32,
    ) -> LeaseGrant {
        let limit_end = now.max(acked_potential_expiry).saturating_add(self.mclt);
        let lease_expiry = now.saturating_add(desired).min(limit_end);
        let lease_secs = lease_expiry - now;
        let scaled = (desired as u64 * self.lease_period_factor_permille as u64 / 1000)
            .min(u32::MAX as u64) as u32;
        let potential_expiry = now.saturating_add(scaled).max(lease_expiry);
        LeaseGrant {
            lease_secs,
            lease_expiry,
            potential_expiry,
        }
    }
}

/// Free-standing form of [`FailoverPolicy::lease_time_allowed`].
pub fn lease_time_allowed(
    policy: &FailoverPolicy,
    now: u32,
    desired: u32,
    acked_potential_expiry: u32,
) -> LeaseGrant {
    policy.lease_time_allowed(now, desired, acked_potential_expiry)
}

const POLICY_WORDS: usize = 8;

fn pack(p: &FailoverPolicy) -> [u64; POLICY_WORDS] {
    let role = match p.role {
        Role::Primary => 0u64,
        Role::Secondary => 1,
    };
    let mut w = [0u64; POLICY_WORDS];
    w[0] = role
        | (p.state.to_wire() as u64) << 8
        | (p.load_balance_max_secs as u64) << 16
        | (p.own_pool_waits as u64) << 32;
    w[1] = p.mclt as u64 | (p.lease_period_factor_permille as u64) << 32;
    w[2] = p.partner_down_usable_at as u64 | (p.rebind_limit as u64) << 32;
    w[7] = p.expiry_grace as u64;
    for i in 0..4 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&p.hba[i * 8..i * 8 + 8]);
        w[3 + i] = u64::from_le_bytes(b);
    }
    w
}

fn unpack(w: &[u64; POLICY_WORDS]) -> FailoverPolicy {
    let mut hba = [0u8; 32];
    for i in 0..4 {
        hba[i * 8..i * 8 + 8].copy_from_slice(&w[3 + i].to_le_bytes());
    }
    FailoverPolicy {
        role: if w[0] & 0xff == 0 {
            Role::Primary
        } else {
            Role::Secondary
        },
        // Only pack() writes these words, so the state byte is always valid; fall back to the
        // most restrictive state rather than panic.
        state: ServerState::from_wire((w[0] >> 8) as u8).unwrap_or(ServerState::Startup),
        load_balance_max_secs: (w[0] >> 16) as u16,
        mclt: w[1] as u32,
        lease_period_factor_permille: (w[1] >> 32) as u32,
        partner_down_usable_at: w[2] as u32,
        rebind_limit: (w[2] >> 32) as u32,
        own_pool_waits: (w[0] >> 32) & 1 != 0,
        expiry_grace: w[7] as u32,
        hba,
    }
}

/// Single-writer, many-reader publication of a [`FailoverPolicy`]: a sequence lock over
/// atomic words. `store` (the failover driver only) bumps the sequence to odd, writes the
/// words, bumps it to even; `load` (any worker) copies the words and retries if the sequence
/// was odd or changed. No locks, no allocation; a reader never waits on the network, only
/// (rarely) on a concurrent `store` of a few nanoseconds.
#[derive(Debug)]
pub struct PolicyCell {
    seq: AtomicU64,
    words: [AtomicU64; POLICY_WORDS],
}

impl PolicyCell {
    /// A cell holding `p`.
    pub fn new(p: FailoverPolicy) -> Self {
        let w = pack(&p);
        PolicyCell {
            seq: AtomicU64::new(0),
            words: w.map(AtomicU64::new),
        }
    }

    /// Publishes a new snapshot. Must not be called from two threads at once.
    pub fn store(&self, p: &FailoverPolicy) {
        let w = pack(p);
        let s = self.seq.load(Ordering::Relaxed);
        self.seq.store(s.wrapping_add(1), Ordering::Relaxed);
        std::sync::atomic::fence(Ordering::Release);
        for (a, v) in self.words.iter().zip(w) {
            a.store(v, Ordering::Relaxed);
        }
        self.seq.store(s.wrapping_add(2), Ordering::Release);
    }

    /// Reads the current snapshot.
    pub fn load(&self) -> FailoverPolicy {
        loop {
            let s1 = self.seq.load(Ordering::Acquire);
            if s1 & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let mut w = [0u64; POLICY_WORDS];
            for (v, a) in w.iter_mut().zip(&self.words) {
                *v = a.load(Ordering::Relaxed);
            }
            std::sync::atomic::fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == s1 {
                return unpack(&w);
            }
        }
    }
}
