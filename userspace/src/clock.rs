//! The only place the daemon reads the wall clock. Engines get `now` from here,
//! once per batch, so tests and simulations can drive them with any clock.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix time in whole seconds (u32 holds it until 2106, as the lease records do).
pub fn unix_now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs().min(u32::MAX as u64) as u32)
        .unwrap_or(0)
}
