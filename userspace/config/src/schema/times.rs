//! Lease times (`[lease]` and a subnet's overrides) and their consistency.

use crate::error::Errors;
use crate::reader::{boolean, number, u32_in, Table};
use crate::LeaseTimes;

use super::{Loc, MAX_TIME};

/// Where each lease-time key was set in the current scope (None: inherited).
#[derive(Default)]
pub(super) struct TimeKeys {
    pub(super) default: Option<Loc>,
    pub(super) min: Option<Loc>,
    pub(super) max: Option<Loc>,
    pub(super) renewal: Option<Loc>,
    pub(super) rebinding: Option<Loc>,
}

impl TimeKeys {
    pub(super) fn any(&self) -> bool {
        self.default.is_some()
            || self.min.is_some()
            || self.max.is_some()
            || self.renewal.is_some()
            || self.rebinding.is_some()
    }
}

/// Reads the lease-time keys of `t` over `base`. `global` adds the keys only
/// `[lease]` has (offer-hold, decline-quarantine, authoritative).
pub(super) fn read_times(
    errs: &mut Errors<'_>,
    t: &Table<'_, '_>,
    base: LeaseTimes,
    global: bool,
) -> (LeaseTimes, TimeKeys) {
    let mut times = base;
    let mut keys = TimeKeys::default();
    let secs = |errs: &mut Errors<'_>, key: &str, slot: &mut u32, loc: &mut Option<Loc>| {
        if let Some(f) = t.get(key) {
            if let Some(v) = u32_in(errs, &f, 1, MAX_TIME, "between 1 and 2147483647 seconds") {
                *slot = v;
                *loc = Some(Loc::of(&f));
            }
        }
    };
    secs(errs, "default-time", &mut times.default, &mut keys.default);
    secs(errs, "min-time", &mut times.min, &mut keys.min);
    secs(errs, "max-time", &mut times.max, &mut keys.max);
    let factor = |errs: &mut Errors<'_>, key: &str, slot: &mut f64, loc: &mut Option<Loc>| {
        if let Some(f) = t.get(key) {
            if let Some(v) = number(errs, &f) {
                if v > 0.0 && v < 1.0 {
                    *slot = v;
                    *loc = Some(Loc::of(&f));
                } else {
                    errs.push(
                        &f.span(),
                        &f.path,
                        format!("{v} is out of range: must be between 0 and 1 (exclusive)"),
                    );
                }
            }
        }
    };
    factor(
        errs,
        "renewal-factor",
        &mut times.renewal_factor,
        &mut keys.renewal,
    );
    factor(
        errs,
        "rebinding-factor",
        &mut times.rebinding_factor,
        &mut keys.rebinding,
    );
    if global {
        if let Some(f) = t.get("offer-hold") {
            if let Some(v) = u32_in(errs, &f, 1, 86_400, "between 1 and 86400 seconds") {
                times.offer_hold = v;
            }
        }
        if let Some(f) = t.get("decline-quarantine") {
            if let Some(v) = u32_in(errs, &f, 0, MAX_TIME, "between 0 and 2147483647 seconds") {
                times.decline_quarantine = v;
            }
        }
        if let Some(f) = t.get("authoritative") {
            if let Some(v) = boolean(errs, &f) {
                times.authoritative = v;
            }
        }
    }
    (times, keys)
}

/// Checks min <= default <= max and renewal < rebinding. In a subnet (`global`
/// false) a relation is only checked when the subnet sets one of its keys, so
/// a global mistake is reported once, at `[lease]`.
pub(super) fn check_times(
    errs: &mut Errors<'_>,
    t: &LeaseTimes,
    keys: &TimeKeys,
    fallback: &Loc,
    global: bool,
) {
    let scope = if global {
        String::new()
    } else {
        " (after merging with [lease])".to_string()
    };
    let place = |a: &Option<Loc>, b: &Option<Loc>| -> Option<Loc> {
        match (a, b) {
            (_, Some(l)) | (Some(l), None) => Some(l.clone()),
            (None, None) if global => Some(fallback.clone()),
            (None, None) => None,
        }
    };
    if t.min > t.default {
        if let Some(l) = place(&keys.default, &keys.min) {
            errs.push(
                &l.span,
                &l.path,
                format!(
                    "min-time {} is greater than default-time {}{scope}",
                    t.min, t.default
                ),
            );
        }
    }
    if t.default > t.max {
        if let Some(l) = place(&keys.default, &keys.max) {
            errs.push(
                &l.span,
                &l.path,
                format!(
                    "default-time {} is greater than max-time {}{scope}",
                    t.default, t.max
                ),
            );
        }
    }
    if t.renewal_factor >= t.rebinding_factor {
        if let Some(l) = place(&keys.renewal, &keys.rebinding) {
            errs.push(
                &l.span,
                &l.path,
                format!(
                    "rebinding-factor {} must be greater than renewal-factor {}{scope}",
                    t.rebinding_factor, t.renewal_factor
                ),
            );
        }
    }
}
