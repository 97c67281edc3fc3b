//! `[event-log]` (the lease event log: where, rotation) and `[alarms]` (thresholds).

use std::path::PathBuf;

use crate::error::Errors;
use crate::reader::{string, u32_in, Table};
use crate::{AlarmsConfig, EventLogConfig};

pub(crate) const EVENT_LOG_KEYS: &[&str] = &["directory", "max-size-mb", "max-age-hours", "keep"];
pub(crate) const ALARMS_KEYS: &[&str] = &["pool-utilisation-pct", "partner-unreachable-secs"];

pub(super) fn read_event_log(errs: &mut Errors<'_>, t: &Table<'_, '_>) -> Option<EventLogConfig> {
    let d = EventLogConfig::default();
    let directory = match t.get("directory") {
        None => Some(d.directory.clone()),
        Some(f) => string(errs, &f).and_then(|s| {
            if s.is_empty() || s.contains('\0') {
                errs.push(&f.span(), &f.path, "expected a directory path");
                None
            } else {
                Some(PathBuf::from(s))
            }
        }),
    };
    let num = |errs: &mut Errors<'_>, key: &str, lo: u32, hi: u32, dflt: u32| match t.get(key) {
        None => Some(dflt),
        Some(f) => u32_in(errs, &f, lo, hi, &format!("between {lo} and {hi}")),
    };
    let max_size_mb = num(errs, "max-size-mb", 1, 65_536, d.max_size_mb);
    let max_age_hours = num(errs, "max-age-hours", 0, 8760, d.max_age_hours);
    let keep = num(errs, "keep", 1, 10_000, d.keep);
    Some(EventLogConfig {
        directory: directory?,
        max_size_mb: max_size_mb?,
        max_age_hours: max_age_hours?,
        keep: keep?,
    })
}

pub(super) fn read_alarms(errs: &mut Errors<'_>, t: &Table<'_, '_>) -> Option<AlarmsConfig> {
    let d = AlarmsConfig::default();
    let pct = match t.get("pool-utilisation-pct") {
        None => Some(d.pool_utilisation_pct),
        Some(f) => u32_in(errs, &f, 1, 100, "between 1 and 100").map(|v| v as u8),
    };
    let unreachable = match t.get("partner-unreachable-secs") {
        None => Some(d.partner_unreachable_secs),
        Some(f) => u32_in(errs, &f, 1, 86_400, "between 1 and 86400"),
    };
    Some(AlarmsConfig {
        pool_utilisation_pct: pct?,
        partner_unreachable_secs: unreachable?,
    })
}
