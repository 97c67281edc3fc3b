//! Address balance between the partners (primary side), sans-IO: how many addresses to move
//! between the primary's FREE pool and the secondary's BACKUP pool, and which ones.
//!
//! Rules (spec "Address balance between partners"; ISC dhcpd 4.4 behaves alike):
//!
//! * **Target.** Of the addresses available to either side, `A = free + backup`, the backup
//!   should hold `T = A * pct / 100` (rounded down). `pct` is the scope's `backup-pct`, else the
//!   `[failover]` value; load balancing forces 50 (decided by the caller).
//! * **Tolerance.** `h = max(1, T / 10)`: the split is "significantly off" when the backup holds
//!   fewer than `T - h` or more than `T + h`.
//! * **Triggers** ([`Trigger`]):
//!   - [`Trigger::Scheduled`] (hourly, on entering NORMAL, on the secondary's POOLREQ): grant up
//!     to `T` whenever the backup holds less than `T`; reclaim down to `T` only beyond `T + h`
//!     (the hysteresis keeps the primary from taking back a handful of addresses every hour);
//!   - [`Trigger::Check`] (cheap counter check, every second): act only when significantly off;
//!     then move all the way to `T`;
//!   - [`Trigger::Exhausted`] (the primary's workers found no FREE address in this pool):
//!     reclaim down to `T` without tolerance (with `free = 0` that is every BACKUP address
//!     beyond the backup's own share, at least one whenever `pct < 100`).
//! * **Order** (allocation boundary `B`, scope `backup-allocation-boundary`; unset = the middle
//!   of the pool, `first + size / 2`): addresses go to the backup from below `B`, highest first
//!   (`B-1, B-2, ..., first`); when nothing is left below `B` they come from `B` upwards
//!   (`B, B+1, ..., last`), so the backup's addresses stay one block around `B`. Reclaims walk
//!   the same order backwards (`last` downwards to `B`, then `first` upwards to `B-1`): the
//!   primary takes back the BACKUP addresses granted last. The walk reads records lazily and
//!   stops once it has enough, but a reclaim with nothing granted above `B` reads the upper
//!   part of the pool first (one record read per address, in the driver thread). The primary's clients are served
//!   upward from the lowest address (lease-store free lists; see `lease-store` for how exact).
//!
//! Reclaiming is safe only because the primary keeps a reclaimed address BACKUP until the
//! secondary acknowledges the FREE update (see [`crate::table::apply_ack`]); a secondary that
//! leased the address meanwhile rejects the update (`resolve_update`: ACTIVE beats FREE) and its
//! ACTIVE binding reaches the primary as usual.

/// Why the balance is being evaluated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Hourly, on entering NORMAL, on POOLREQ: grant to the target, reclaim beyond tolerance.
    Scheduled,
    /// Periodic counter check: act only when the split is significantly off.
    Check,
    /// The primary found no FREE address in this pool: reclaim to the target, no tolerance.
    Exhausted,
}

/// How many addresses to move, from counts alone (O(1); no scan).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Move {
    /// The split is within tolerance: move nothing.
    Nothing,
    /// FREE -> BACKUP.
    Grant(usize),
    /// BACKUP -> FREE.
    Reclaim(usize),
}

/// The backup's target share `T` of `free + backup` available addresses.
pub fn target(free: usize, backup: usize, pct: u8) -> usize {
    let a = free.saturating_add(backup) as u128;
    (a * u128::from(pct.min(100)) / 100) as usize
}

/// The tolerance `h` around target `t`.
pub fn tolerance(t: usize) -> usize {
    (t / 10).max(1)
}

/// The move for a pool with `free` FREE and `backup` BACKUP addresses (BACKUP addresses whose
/// reclaim is in flight count as FREE already).
pub fn decide(free: usize, backup: usize, pct: u8, trigger: Trigger) -> Move {
    let t = target(free, backup, pct);
    let h = tolerance(t);
    let (grant_below, reclaim_above) = match trigger {
        Trigger::Scheduled => (t, t.saturating_add(h)),
        Trigger::Check => (t.saturating_sub(h), t.saturating_add(h)),
        Trigger::Exhausted => (0, t),
    };
    if backup < grant_below {
        Move::Grant((t - backup).min(free))
    } else if backup > reclaim_above {
        Move::Reclaim(backup - t)
    } else {
        Move::Nothing
    }
}

/// One pool's balance settings: inclusive range and the allocation boundary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolBalance {
    /// First address of the pool, as `u32::from(Ipv4Addr)`.
    pub first: u32,
    /// Last address of the pool (inclusive, not below `first`), as `u32::from(Ipv4Addr)`.
    pub last: u32,
    /// Percentage for the backup (scope value, else the relationship's).
    pub pct: u8,
    /// Allocation boundary; None = middle of the pool. Clamped to `first..=last + 1`.
    pub boundary: Option<u32>,
}

impl PoolBalance {
    /// The effective boundary `B`: addresses `< B` are "below" it.
    pub fn boundary(&self) -> u64 {
        let (f, l) = (u64::from(self.first), u64::from(self.last));
        match self.boundary {
            Some(b) => u64::from(b).clamp(f, l + 1),
            None => f + (l + 1).saturating_sub(f) / 2,
        }
    }

    /// Addresses in the order they are granted to the backup: below `B` highest first, then
    /// from `B` upwards. Lazy: a caller that needs `n` addresses reads only until it has them.
    pub fn grant_order(&self) -> impl DoubleEndedIterator<Item = u32> {
        let b = self.boundary();
        let (f, l) = (u64::from(self.first), u64::from(self.last));
        let below = (f..b).rev();
        let above = b..=l;
        // Values are within first..=last, so they fit u32.
        below.chain(above).map(|a| a as u32)
    }

    /// Addresses in the order the primary reclaims them: [`grant_order`](Self::grant_order)
    /// reversed (the addresses granted last come back first).
    pub fn reclaim_order(&self) -> impl Iterator<Item = u32> {
        self.grant_order().rev()
    }
}

/// What one address is, as far as balancing cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddrKind {
    /// FREE, the primary's, not quarantined: may be granted.
    Free,
    /// BACKUP, no reclaim in flight: may be reclaimed.
    Backup,
    /// Anything else (leased, offered, reserved, a reclaim in flight...).
    Other,
}

/// The addresses to move in one pool.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// FREE -> BACKUP, in grant order.
    pub grant: Vec<u32>,
    /// BACKUP -> FREE (sent as a FREE binding update; applied on the partner's ack).
    pub reclaim: Vec<u32>,
}

impl Plan {
    /// Nothing to grant and nothing to reclaim.
    pub fn is_empty(&self) -> bool {
        self.grant.is_empty() && self.reclaim.is_empty()
    }
}

/// Plans one pool: [`decide`] on the counts, then picks the addresses in boundary order,
/// asking `kind` about each (it is called only until enough are found).
pub fn plan(
    pool: &PoolBalance,
    free: usize,
    backup: usize,
    trigger: Trigger,
    mut kind: impl FnMut(u32) -> AddrKind,
) -> Plan {
    let mut p = Plan::default();
    match decide(free, backup, pool.pct, trigger) {
        Move::Nothing => {}
        Move::Grant(n) => {
            p.grant = pool
                .grant_order()
                .filter(|&a| kind(a) == AddrKind::Free)
                .take(n)
                .collect();
        }
        Move::Reclaim(n) => {
            p.reclaim = pool
                .reclaim_order()
                .filter(|&a| kind(a) == AddrKind::Backup)
                .take(n)
                .collect();
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn pool(first: u32, last: u32, pct: u8, boundary: Option<u32>) -> PoolBalance {
        PoolBalance {
            first,
            last,
            pct,
            boundary,
        }
    }

    /// A pool state: address -> kind; counts derived from it.
    fn run(p: &PoolBalance, kinds: &HashMap<u32, AddrKind>, trigger: Trigger) -> Plan {
        let k = |a: u32| kinds.get(&a).copied().unwrap_or(AddrKind::Other);
        let free = (p.first..=p.last)
            .filter(|&a| k(a) == AddrKind::Free)
            .count();
        let backup = (p.first..=p.last)
            .filter(|&a| k(a) == AddrKind::Backup)
            .count();
        plan(p, free, backup, trigger, k)
    }

    fn all_free(p: &PoolBalance) -> HashMap<u32, AddrKind> {
        (p.first..=p.last).map(|a| (a, AddrKind::Free)).collect()
    }

    #[test]
    fn grant_takes_pct_of_available_from_below_the_midpoint_highest_first() {
        let p = pool(100, 109, 30, None); // boundary = 105
        assert_eq!(p.boundary(), 105);
        let plan = run(&p, &all_free(&p), Trigger::Scheduled);
        assert_eq!(plan.grant, vec![104, 103, 102]);
        assert!(plan.reclaim.is_empty());
    }

    #[test]
    fn grant_continues_above_the_boundary_when_below_is_used() {
        let p = pool(0, 9, 50, Some(2));
        let mut k = all_free(&p);
        k.insert(0, AddrKind::Other); // leased
        let plan = run(&p, &k, Trigger::Scheduled);
        // 9 available -> target 4: 1 (below 2, highest first; 0 is leased), then 2, 3, 4.
        assert_eq!(plan.grant, vec![1, 2, 3, 4]);
    }

    #[test]
    fn scope_pct_decides_the_share() {
        let global = pool(0, 99, 50, None);
        let scope = PoolBalance { pct: 10, ..global };
        assert_eq!(
            run(&global, &all_free(&global), Trigger::Scheduled)
                .grant
                .len(),
            50
        );
        let g = run(&scope, &all_free(&scope), Trigger::Scheduled).grant;
        assert_eq!(g.len(), 10);
        assert_eq!(g.first(), Some(&49));
        assert_eq!(g.last(), Some(&40));
    }

    #[test]
    fn reclaim_needs_more_than_the_tolerance_on_schedule() {
        // 100 available, pct 50 -> T = 50, h = 5.
        assert_eq!(decide(45, 55, 50, Trigger::Scheduled), Move::Nothing);
        assert_eq!(decide(44, 56, 50, Trigger::Scheduled), Move::Reclaim(6));
        // Granting on schedule goes to the target exactly.
        assert_eq!(decide(51, 49, 50, Trigger::Scheduled), Move::Grant(1));
        // The cheap periodic check waits until significantly off, then goes to the target.
        assert_eq!(decide(51, 49, 50, Trigger::Check), Move::Nothing);
        assert_eq!(decide(56, 44, 50, Trigger::Check), Move::Grant(6));
        assert_eq!(decide(45, 55, 50, Trigger::Check), Move::Nothing);
        assert_eq!(decide(44, 56, 50, Trigger::Check), Move::Reclaim(6));
        // Small pools: tolerance is at least one address.
        assert_eq!(decide(2, 3, 50, Trigger::Scheduled), Move::Nothing);
        assert_eq!(decide(1, 4, 50, Trigger::Scheduled), Move::Reclaim(2));
        assert_eq!(decide(0, 0, 50, Trigger::Scheduled), Move::Nothing);
        assert_eq!(decide(10, 0, 0, Trigger::Scheduled), Move::Nothing);
        assert_eq!(decide(8, 2, 0, Trigger::Scheduled), Move::Reclaim(2));
    }

    #[test]
    fn exhaustion_reclaims_without_tolerance() {
        // No FREE left: the primary takes back all but the backup's share.
        assert_eq!(decide(0, 10, 50, Trigger::Exhausted), Move::Reclaim(5));
        assert_eq!(decide(0, 1, 50, Trigger::Exhausted), Move::Reclaim(1));
        assert_eq!(decide(0, 3, 10, Trigger::Exhausted), Move::Reclaim(3));
        // pct 100: everything belongs to the backup, nothing to take.
        assert_eq!(decide(0, 7, 100, Trigger::Exhausted), Move::Nothing);
        // Same counts on schedule: within tolerance of T = 0 only for one address.
        assert_eq!(decide(0, 1, 50, Trigger::Scheduled), Move::Nothing);
    }

    #[test]
    fn reclaim_takes_back_the_addresses_granted_last() {
        let p = pool(0, 9, 50, None); // B = 5: grant order 4 3 2 1 0 5 6 7 8 9
        let granted = run(&p, &all_free(&p), Trigger::Scheduled).grant;
        assert_eq!(granted, vec![4, 3, 2, 1, 0]);
        // The primary leased 5..=9 meanwhile: FREE is empty.
        let mut k: HashMap<u32, AddrKind> = (0..10).map(|a| (a, AddrKind::Other)).collect();
        for a in &granted {
            k.insert(*a, AddrKind::Backup);
        }
        let plan = run(&p, &k, Trigger::Exhausted);
        // T = 5 * 50% = 2: reclaim 3, lowest first (granted last).
        assert_eq!(plan.reclaim, vec![0, 1, 2]);
        assert!(plan.grant.is_empty());
    }

    #[test]
    fn reclaim_skips_addresses_in_flight_or_leased_by_the_backup() {
        let p = pool(0, 9, 0, None);
        let mut k: HashMap<u32, AddrKind> = (0..10).map(|a| (a, AddrKind::Free)).collect();
        k.insert(0, AddrKind::Other); // the backup leased it (its ACTIVE arrived)
        k.insert(1, AddrKind::Backup);
        k.insert(4, AddrKind::Backup);
        let plan = run(&p, &k, Trigger::Scheduled);
        assert_eq!(plan.reclaim, vec![1, 4]);
    }

    #[test]
    fn boundary_is_clamped_into_the_pool() {
        assert_eq!(pool(10, 19, 50, Some(0)).boundary(), 10);
        assert_eq!(pool(10, 19, 50, Some(99)).boundary(), 20);
        let all_below = pool(10, 12, 50, Some(99));
        assert_eq!(
            all_below.grant_order().collect::<Vec<_>>(),
            vec![12, 11, 10]
        );
        let all_above = pool(10, 12, 50, Some(0));
        assert_eq!(
            all_above.grant_order().collect::<Vec<_>>(),
            vec![10, 11, 12]
        );
        assert_eq!(
            all_above.reclaim_order().collect::<Vec<_>>(),
            vec![12, 11, 10]
        );
        // A single-address pool and the top of the address space.
        assert_eq!(
            pool(7, 7, 50, None).grant_order().collect::<Vec<_>>(),
            vec![7]
        );
        let top = pool(u32::MAX - 1, u32::MAX, 50, None);
        assert_eq!(top.boundary(), u64::from(u32::MAX));
        assert_eq!(
            top.grant_order().collect::<Vec<_>>(),
            vec![u32::MAX - 1, u32::MAX]
        );
    }

    #[test]
    fn plan_reads_only_as_far_as_it_needs() {
        // Boundary above the pool: everything is below it; reclaims start at `first`.
        let p = pool(0, 1_000_000, 0, Some(2_000_000));
        let mut asked = 0usize;
        // backup 3 > T + h = 1: reclaim 3; the first three in reclaim order are BACKUP.
        let plan = plan(&p, 999_998, 3, Trigger::Scheduled, |a| {
            asked += 1;
            if a < 3 {
                AddrKind::Backup
            } else {
                AddrKind::Free
            }
        });
        assert_eq!(plan.reclaim, vec![0, 1, 2]);
        assert_eq!(asked, 3);
    }
}
